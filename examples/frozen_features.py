"""Transfer learning with a frozen feature layer, on scikit-learn's handwritten digits.

    python examples/frozen_features.py       # or --quick

1. Pre-train a small network (64 pixels -> 128 tanh features -> 5 classes) on digits 0-4.
2. Transfer: keep its feature layer, put a NEW head on it (128 -> 5 classes) and train only
   the head on digits 5-9. The feature layer is frozen in two equivalent ways, side by side:
     a) `tj.stop_gradient(features)` inside the loss, differentiating w.r.t. all parameters
        (with unconnected="none" the frozen parameters' gradients come back as None);
     b) leaving the feature parameters out of `argnums` (TensorFlow's var_list=...).
Both must give the same head and the same test accuracy. Needs scikit-learn (no download:
the data set ships inside it).
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tracejit as tj
import tracejit.numpy as tnp


def features(feat, x):
    return np.tanh(x @ feat["W"] + feat["b"])


def cross_entropy(logits, labels_onehot):
    return -np.mean(np.sum(labels_onehot * tnp.log_softmax(logits), axis=1))


# step 1: pre-training updates everything (features and head)
def pretrain_loss(params, x, y):
    return cross_entropy(features(params["feat"], x) @ params["head"]["W"]
                         + params["head"]["b"], y)


# step 2a: one parameter tree, features frozen by stop_gradient
def loss_stop_gradient(params, x, y):
    h = tj.stop_gradient(features(params["feat"], x))   # no gradient flows into "feat"
    return cross_entropy(h @ params["head"]["W"] + params["head"]["b"], y)


# step 2b: the head is argument 0 and the only one we differentiate (argnums=0)
def loss_head_only(head, feat, x, y):
    return cross_entropy(features(feat, x) @ head["W"] + head["b"], y)


def init_layer(rng, n_in, n_out):
    return {"W": (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(np.float32),
            "b": np.zeros(n_out, np.float32)}


def sgd(params, grads, lr):
    """params - lr * grads on matching trees; a None gradient (frozen) leaves it unchanged."""
    if isinstance(params, dict):
        return {k: sgd(params[k], None if grads is None else grads[k], lr) for k in params}
    return params if grads is None else params - lr * grads


def batches(n, batch_size, rng):
    """Shuffled index batches of one fixed size (the remainder is dropped), so every step has
    the same shapes and reuses one compiled function."""
    order = rng.permutation(n)
    for i in range(0, n - batch_size + 1, batch_size):
        yield order[i:i + batch_size]


def accuracy(feat, head, x, labels):
    logits = features(feat, x) @ head["W"] + head["b"]   # plain NumPy, outside tracejit
    return np.mean(np.argmax(logits, axis=1) == labels)


def load_task(digits, classes, rng_seed=0):
    """Images of `classes`, relabelled 0..len(classes)-1, split 70/30 (stratified)."""
    keep = np.isin(digits.target, classes)
    x = (digits.data[keep] / 16.0).astype(np.float32)
    labels = np.searchsorted(classes, digits.target[keep])
    return train_test_split(x, labels, test_size=0.3, random_state=rng_seed, stratify=labels)


def train(step_fn, params, x, y, epochs, lr, rng, name, batch_size=64):
    for epoch in range(1, epochs + 1):
        total = 0.0
        for idx in batches(len(x), batch_size, rng):
            value, grads = step_fn(params, x[idx], y[idx])
            params = sgd(params, grads, lr)
            total += value
        if epoch == 1 or epoch % max(epochs // 5, 1) == 0:
            print(f"  [{name}] epoch {epoch:3d}  mean loss {total / (len(x) // batch_size):.4f}")
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the tests)")
    args = parser.parse_args()
    epochs = 10 if args.quick else 40
    digits = load_digits()
    onehot = np.eye(5, dtype=np.float32)

    # 1. pre-train on digits 0-4
    rng = np.random.default_rng(0)
    xs_tr, xs_te, ls_tr, ls_te = load_task(digits, np.arange(0, 5))
    params = {"feat": init_layer(rng, 64, 128), "head": init_layer(rng, 128, 5)}
    print(f"pre-training on digits 0-4 ({len(xs_tr)} images)")
    step = tj.value_and_grad(pretrain_loss)
    params = train(lambda p, x, y: step(p, x, onehot[y]), params, xs_tr, ls_tr, epochs, 0.5,
                   rng, "pretrain")
    feat = params["feat"]
    print(f"  source-task test accuracy: {accuracy(feat, params['head'], xs_te, ls_te):.3f}")

    # 2. transfer to digits 5-9 with a new head; the features stay frozen
    xt_tr, xt_te, lt_tr, lt_te = load_task(digits, np.arange(5, 10))
    head0 = init_layer(np.random.default_rng(1), 128, 5)
    print(f"training a new head on digits 5-9 ({len(xt_tr)} images), features frozen")

    # 2a. stop_gradient; unconnected="none" returns None for the parameters no gradient reaches
    step_a = tj.value_and_grad(loss_stop_gradient, unconnected="none")
    _, g = step_a({"feat": feat, "head": head0}, xt_tr[:64], onehot[lt_tr[:64]])
    print(f"  (a) gradient of the frozen feature W: {g['feat']['W']}  (None: nothing flows)")
    pa = train(lambda p, x, y: step_a(p, x, onehot[y]), {"feat": feat, "head": head0},
               xt_tr, lt_tr, epochs, 0.5, np.random.default_rng(2), "stop_gradient")

    # 2b. argnums=0: differentiate w.r.t. the head only; feat is just an input
    step_b = tj.value_and_grad(loss_head_only, argnums=0)
    head_b = train(lambda h, x, y: step_b(h, feat, x, onehot[y]), head0, xt_tr, lt_tr,
                   epochs, 0.5, np.random.default_rng(2), "argnums=0")

    assert all(np.array_equal(pa["feat"][k], feat[k]) for k in feat)  # never updated
    acc_a = accuracy(feat, pa["head"], xt_te, lt_te)
    acc_b = accuracy(feat, head_b, xt_te, lt_te)
    diff = max(np.max(np.abs(pa["head"][k] - head_b[k])) for k in head_b)
    print(f"  heads trained both ways differ by at most {diff:.2e}")
    print(f"result: target-task test accuracy {acc_a:.3f} (stop_gradient) and {acc_b:.3f} "
          f"(argnums) on {len(xt_te)} held-out digits 5-9")


if __name__ == "__main__":
    main()
