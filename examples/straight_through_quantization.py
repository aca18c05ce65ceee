"""Quantization-aware training with the straight-through estimator (STE), on the digits.

    python examples/straight_through_quantization.py     # or --quick

A 64 -> 64 -> 10 network whose weights are rounded to 2 bits (ternary: -s, 0, s) in the
forward pass. Rounding has zero gradient almost everywhere, so we train through it with

    w_q = w + stop_gradient(quantize(w) - w)      # forward: quantize(w); backward: identity

and, equivalently, with a custom gradient rule (`tj.custom_vjp`). We compare with a float
model, and with the float model quantized after training (no STE). Needs scikit-learn.
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tracejit as tj
import tracejit.numpy as tnp

BITS = 2
LEVELS = 2 ** (BITS - 1) - 1          # steps each side of zero: 2 bits -> {-s, 0, s}


def quantize(w):
    """Round w to a symmetric grid of LEVELS steps per side; the step is 1.5 mean |w| / LEVELS
    (for 2 bits: weights under ~0.75 mean |w| become 0, as in ternary weight networks)."""
    step = tj.stop_gradient(1.5 * np.mean(np.abs(w)) / LEVELS)   # the grid is not trained
    return np.clip(np.round(w / step), -LEVELS, LEVELS) * step


# 1. the stop_gradient way: the value of quantize(w), the gradient of w
def ste(w):
    return w + tj.stop_gradient(quantize(w) - w)


# 2. the custom_vjp way: forward quantize(w), backward pass the cotangent straight through
@tj.custom_vjp
def ste_custom(w):
    return quantize(w)


def ste_fwd(w):
    return quantize(w), None          # (output, residuals for the backward pass: none)


def ste_bwd(residuals, g):
    return (g,)                       # one cotangent per argument: identity


ste_custom.defvjp(ste_fwd, ste_bwd)


def no_quantization(w):
    return w


def make_loss(q):
    """Cross-entropy of the network whose weight matrices go through q."""
    def loss(params, x, y_onehot):
        h = tnp.relu(x @ q(params["W1"]) + params["b1"])
        logits = h @ q(params["W2"]) + params["b2"]
        return -np.mean(np.sum(y_onehot * tnp.log_softmax(logits), axis=1))
    return loss


def predict(params, x, q):
    h = np.maximum(x @ q(params["W1"]) + params["b1"], 0)   # plain NumPy for evaluation
    return np.argmax(h @ q(params["W2"]) + params["b2"], axis=1)


def init(rng):
    return {"W1": (rng.normal(size=(64, 64)) / 8).astype(np.float32),
            "b1": np.zeros(64, np.float32),
            "W2": (rng.normal(size=(64, 10)) / 8).astype(np.float32),
            "b2": np.zeros(10, np.float32)}


def train(name, q, x, y, epochs, batch_size=64, lr=0.2):
    step = tj.value_and_grad(make_loss(q))
    params = init(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    onehot = np.eye(10, dtype=np.float32)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        losses = []
        for i in range(0, len(x) - batch_size + 1, batch_size):   # fixed-size batches
            idx = order[i:i + batch_size]
            value, grads = step(params, x[idx], onehot[y[idx]])
            params = {k: params[k] - lr * grads[k] for k in params}
            losses.append(value)
        if epoch == 1 or epoch % max(epochs // 5, 1) == 0:
            print(f"  [{name}] epoch {epoch:3d}  loss {np.mean(losses):.4f}")
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the tests)")
    args = parser.parse_args()
    epochs = 10 if args.quick else 40
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                              stratify=digits.target)

    print(f"float baseline ({len(x_tr)} training images)")
    p_float = train("float", no_quantization, x_tr, y_tr, epochs)
    print(f"quantization-aware training, {BITS}-bit weights, STE via stop_gradient")
    p_ste = train("STE stop_gradient", ste, x_tr, y_tr, epochs)
    print(f"quantization-aware training, {BITS}-bit weights, STE via custom_vjp")
    p_custom = train("STE custom_vjp", ste_custom, x_tr, y_tr, epochs)

    acc = lambda p, q: np.mean(predict(p, x_te, q) == y_te)
    a_float = acc(p_float, no_quantization)
    a_ptq = acc(p_float, quantize)        # quantize the float model after training
    a_ste = acc(p_ste, quantize)
    a_custom = acc(p_custom, quantize)
    n_levels = len(np.unique(quantize(p_ste["W1"])))
    print(f"  distinct values in the quantized W1: {n_levels}")
    # w + (q(w) - w) and q(w) can differ in the last bit; training amplifies that a little
    print(f"  the two STE versions' weights differ by at most "
          f"{max(np.max(np.abs(p_ste[k] - p_custom[k])) for k in p_ste):.2e} (float rounding)")
    print(f"result: test accuracy float {a_float:.3f} | {BITS}-bit after training (no STE) "
          f"{a_ptq:.3f} | {BITS}-bit STE stop_gradient {a_ste:.3f} | {BITS}-bit STE custom_vjp "
          f"{a_custom:.3f}")


if __name__ == "__main__":
    main()
