"""A restricted Boltzmann machine trained with contrastive divergence (CD-1) on the digits.

    python examples/rbm_contrastive_divergence.py   # or --quick

A binary RBM: 64 visible units (8x8 digit images, pixels > 7 -> 1), 64 hidden units,
energy E(v, h) = -v.b - h.c - v W h. Its free energy F(v) = -v.b - sum softplus(v W + c)
turns CD-1 into an ordinary loss,

    loss = mean F(v_data) - mean F(stop_gradient(v_model)),

where v_model is a one-step reconstruction: sample h ~ p(h | v_data), then
v_model = p(v | h). v_model depends on W, b and c, but CD treats the negative-phase
samples as fixed data: `tj.stop_gradient` says exactly that, and the gradient of this loss
is then the CD-1 update. Random numbers enter as an argument (traced functions are pure).
Progress: the reconstruction error mean (v_data - p(v | h))^2 on held-out images.
Needs scikit-learn.
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tracejit as tj
import tracejit.numpy as tnp


def free_energy(params, v):
    return -(v @ params["b"]) - np.sum(tnp.softplus(v @ params["W"] + params["c"]), axis=1)


def reconstruct(params, v, noise):
    """One Gibbs step v -> h -> p(v | h); `noise` ~ U(0, 1) samples the binary hiddens."""
    p_h = tnp.sigmoid(v @ params["W"] + params["c"])
    h = (noise < p_h).astype(v.dtype)                  # a sample: no gradient through it
    return tnp.sigmoid(h @ params["W"].T + params["b"])


def cd1_loss(params, v_data, noise):
    p_v = reconstruct(params, v_data, noise)
    v_model = tj.stop_gradient(p_v)                    # negative phase: held fixed
    loss = np.mean(free_energy(params, v_data)) - np.mean(free_energy(params, v_model))
    return loss, np.mean((v_data - p_v) ** 2)          # aux: reconstruction error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the tests)")
    args = parser.parse_args()
    epochs = 5 if args.quick else 40
    n_hidden, batch_size, lr = 64, 32, 0.1

    digits = load_digits()
    v = (digits.data > 7).astype(np.float32)
    v_train, v_test = train_test_split(v, test_size=0.2, random_state=0)
    rng = np.random.default_rng(0)
    params = {"W": (0.01 * rng.normal(size=(64, n_hidden))).astype(np.float32),
              "b": np.zeros(64, np.float32), "c": np.zeros(n_hidden, np.float32)}

    step = tj.value_and_grad(cd1_loss, has_aux=True)
    recon = tj.jit(lambda p, v, u: np.mean((v - reconstruct(p, v, u)) ** 2))
    test_noise = rng.uniform(size=(len(v_test), n_hidden)).astype(np.float32)
    first = recon(params, v_test, test_noise)
    print(f"epoch   0  held-out reconstruction error {first:.4f}")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(v_train))
        errors = []
        for i in range(0, len(v_train) - batch_size + 1, batch_size):
            batch = v_train[order[i:i + batch_size]]
            noise = rng.uniform(size=(batch_size, n_hidden)).astype(np.float32)
            (_, err), grads = step(params, batch, noise)
            params = {k: params[k] - lr * grads[k] for k in params}
            errors.append(err)
        last = recon(params, v_test, test_noise)
        if epoch <= 5 or epoch % 5 == 0:
            print(f"epoch {epoch:3d}  train reconstruction error {np.mean(errors):.4f}  "
                  f"held-out {last:.4f}")
    print(f"result: held-out reconstruction error {first:.4f} -> {last:.4f} after {epochs} "
          f"epochs of CD-1")


if __name__ == "__main__":
    main()
