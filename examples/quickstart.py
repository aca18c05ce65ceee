"""A 30-second tour of tracejit: grad, jit_grad, value_and_grad (argnums, has_aux),
stop_gradient, and the IR tracejit builds for a loss and for its gradient.

    python examples/quickstart.py            # or --quick

The model is logistic regression on a synthetic, linearly separable-ish data set.
"""
import argparse

import numpy as np

import tracejit as tj
import tracejit.numpy as tnp  # NumPy's functions plus a few NumPy lacks (sigmoid, softmax...)


# A loss written in plain NumPy. tracejit traces it: `x @ w`, `np.mean` ... become IR.
# Binary cross-entropy -mean(y log p + (1 - y) log(1 - p)) with p = sigmoid(z), written
# as softplus(z) - y z: the same value, but log(1 - p) can't hit log(0) when p rounds to 1.
def loss(w, b, x, y):
    z = x @ w + b                                  # logits
    return np.mean(tnp.softplus(z) - y * z)


def make_data(n, rng):
    x = rng.normal(size=(n, 2)).astype(np.float32)
    true_w = np.array([2.0, -3.0], dtype=np.float32)
    y = (x @ true_w + 0.5 + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (for the tests)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = make_data(256, rng)
    w, b = np.zeros(2, np.float32), np.float32(0.0)

    # 1. grad: the gradient w.r.t. argument 0 (w), same shape as w
    dw = tj.grad(loss)(w, b, x, y)
    print("1. grad(loss)(w, b, x, y)            ->", dw)

    # 2. argnums picks the arguments to differentiate: a tuple gives a tuple of gradients
    dw, db = tj.grad(loss, argnums=(0, 1))(w, b, x, y)
    print("2. grad(loss, argnums=(0, 1))        ->", dw, db)

    # 3. value_and_grad with has_aux: the function returns (loss, aux); aux rides along
    def loss_and_accuracy(w, b, x, y):
        z = x @ w + b
        accuracy = np.mean((z > 0) == (y > 0.5))  # p > 0.5 exactly when z > 0
        return np.mean(tnp.softplus(z) - y * z), accuracy

    (value, acc), (dw, db) = tj.value_and_grad(loss_and_accuracy, argnums=(0, 1),
                                               has_aux=True)(w, b, x, y)
    print(f"3. value_and_grad(..., has_aux=True) -> loss {value:.4f}, accuracy {acc:.2f}")

    # 4. stop_gradient: a constant edge. d/dx [x * stop_gradient(x)] = stop_gradient(x) = x,
    #    not 2x: the second factor is treated as a constant.
    g = tj.grad(lambda v: np.sum(v * tj.stop_gradient(v)))(np.array([1.0, 2.0, 3.0]))
    print("4. grad(sum(x * stop_gradient(x)))   ->", g, "(not 2x)")

    # 5. jit_grad: the decorator form of value_and_grad; compile once, call in a loop
    train_step = tj.jit_grad(loss_and_accuracy, argnums=(0, 1), has_aux=True)
    steps = 40 if args.quick else 200
    lr = 1.0
    print(f"5. training with @jit_grad for {steps} steps:")
    for step in range(1, steps + 1):
        (value, acc), (dw, db) = train_step(w, b, x, y)
        w, b = w - lr * dw, b - lr * db           # plain gradient descent
        if step % (steps // 5) == 0:
            print(f"   step {step:4d}  loss {value:.4f}  accuracy {acc:.3f}")

    # 6. the IR: what tracejit traced, and the joint forward+backward graph it differentiates
    print("6. make_ir(loss): the traced forward graph")
    print(tj.make_ir(loss)(w, b, x, y))
    print("   make_ir(grad(loss)): forward and backward in one graph")
    print(tj.make_ir(tj.grad(loss))(w, b, x, y))

    value, acc = tj.jit(loss_and_accuracy)(w, b, x, y)
    print(f"result: logistic regression trained, loss {value:.4f}, train accuracy {acc:.3f}, "
          f"w = [{w[0]:.2f}, {w[1]:.2f}], b = {float(b):.2f}")


if __name__ == "__main__":
    main()
