"""A softmax classifier whose naive softmax overflows, and the one-line fix.

    python examples/stable_softmax.py        # or --quick

exp(logit) overflows float32 once a logit passes ~88.7: exp -> inf, inf / inf -> NaN, and
the loss and every gradient become NaN. Subtracting the row maximum first changes nothing
mathematically (softmax is shift-invariant) but keeps every exp() <= 1:

    z = logits - tj.stop_gradient(np.max(logits, axis=1, keepdims=True))

The max sits under stop_gradient: its exact gradient contribution is zero anyway (the shift
cancels), so there is no point differentiating through it. (tnp.log_softmax, tnp.softmax
and tnp.logsumexp do this for you.) The data are scikit-learn's digits as raw pixel values
0..16, not normalized, which is what makes the logits large. Needs scikit-learn.
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tracejit as tj


def naive_log_softmax(logits):
    e = np.exp(logits)
    return np.log(e / np.sum(e, axis=1, keepdims=True))


def stable_log_softmax(logits):
    z = logits - tj.stop_gradient(np.max(logits, axis=1, keepdims=True))
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


def make_loss(log_softmax):
    """Cross-entropy, and (as aux) the largest |logit| in the batch, to watch them grow."""
    def loss(params, x, y_onehot):
        logits = x @ params["W"] + params["b"]
        return (-np.mean(np.sum(y_onehot * log_softmax(logits), axis=1)),
                np.max(np.abs(logits)))
    return loss


naive_loss = make_loss(naive_log_softmax)
stable_loss = make_loss(stable_log_softmax)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the tests)")
    args = parser.parse_args()
    epochs = 5 if args.quick else 30

    # 1. on a single row of large logits
    big = np.array([[1000.0, 0.0, -5.0]], np.float32)
    f_naive, f_stable = tj.jit(naive_log_softmax), tj.jit(stable_log_softmax)
    with np.errstate(all="ignore"):
        print(f"log_softmax([1000, 0, -5]): naive {f_naive(big)[0]}, stable {f_stable(big)[0]}")

    digits = load_digits()
    x = digits.data.astype(np.float32)                 # raw pixels 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                              stratify=digits.target)
    onehot = np.eye(10, dtype=np.float32)
    rng = np.random.default_rng(0)
    params0 = {"W": (0.01 * rng.normal(size=(64, 10))).astype(np.float32),
               "b": np.zeros(10, np.float32)}

    # 2. where both are finite (small logits at the start), the gradients agree
    step_naive = tj.value_and_grad(naive_loss, has_aux=True)
    step_stable = tj.value_and_grad(stable_loss, has_aux=True)
    batch = slice(0, 64)
    ((ln, _), gn), ((ls, _), gs) = [s(params0, x_tr[batch], onehot[y_tr[batch]])
                          for s in (step_naive, step_stable)]
    grad_diff = max(float(np.max(np.abs(gn[k] - gs[k]))) for k in gn)
    grad_size = max(float(np.max(np.abs(gs[k]))) for k in gs)
    print(f"at the start: loss naive {ln:.6f} stable {ls:.6f}; gradients differ by at most "
          f"{grad_diff:.2e} (largest entry {grad_size:.2e})")

    # 3. train both from the same start with the same batches
    lr, batch_size = 0.1, 64
    runs = {"naive": [step_naive, dict(params0), None],
            "stable": [step_stable, dict(params0), None]}
    peak = 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_tr))
        losses = {name: [] for name in runs}
        for i in range(0, len(x_tr) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            for name, run in runs.items():
                step, params, _ = run
                (value, max_logit), grads = step(params, x_tr[idx], onehot[y_tr[idx]])
                run[1] = {k: params[k] - lr * grads[k] for k in params}
                losses[name].append(value)
                if name == "stable":
                    peak = max(peak, float(max_logit))
                if not np.isfinite(value) and run[2] is None:
                    run[2] = epoch                      # first epoch with a NaN loss
        print(f"epoch {epoch:3d}  loss naive {np.mean(losses['naive']):9.4f}  "
              f"stable {np.mean(losses['stable']):.4f}   largest |logit| so far {peak:.0f}")

    params = runs["stable"][1]
    acc = np.mean(np.argmax(x_te @ params["W"] + params["b"], axis=1) == y_te)
    nan_epoch = runs["naive"][2]
    naive_note = f"NaN from epoch {nan_epoch}" if nan_epoch else "stayed finite"
    print(f"result: naive softmax loss {naive_note}; stable softmax test accuracy {acc:.3f} "
          f"(logits up to {peak:.0f}); gradients agree to {grad_diff:.1e} where both are finite")


if __name__ == "__main__":
    main()
