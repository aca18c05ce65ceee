"""A small GAN on a 1-D target distribution, trained by alternating D and G steps.

    python examples/gan_alternating.py        # or --quick; --out PATH for the PNG

Target: a two-component Gaussian mixture (-2 and +2, sd 0.5). Generator: noise z (4-D) ->
32 tanh units -> 1 number. Discriminator: x -> 32 tanh units -> a logit.

Each round updates one parameter set while the other is held fixed:
  * D's step differentiates w.r.t. D's parameters only (argnums=0), and the fake samples
    enter as `tj.stop_gradient(G(z))`: no gradient flows back into the generator.
  * G's step differentiates w.r.t. G's parameters only (argnums=0), through D.
Progress: the 1-D Wasserstein distance between generated and target samples. A PNG
compares the two distributions (needs matplotlib; without it the PNG is skipped).
"""
import argparse
import os

import numpy as np

import tracejit as tj
import tracejit.numpy as tnp


def mlp(params, x):
    h = np.tanh(x @ params["W1"] + params["b1"])
    return h @ params["W2"] + params["b2"]


def generate(g_params, z):
    return mlp(g_params, z)                           # (batch, 1) samples


# D sees real samples (label 1) and fakes (label 0). Binary cross-entropy on logits:
# -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
def d_loss(d_params, g_params, z, real):
    fake = tj.stop_gradient(generate(g_params, z))    # G is a constant in D's step
    return np.mean(tnp.softplus(-mlp(d_params, real))) + np.mean(tnp.softplus(mlp(d_params, fake)))


# G wants D to call its samples real (the "non-saturating" loss -log D(G(z))).
def g_loss(g_params, d_params, z):
    return np.mean(tnp.softplus(-mlp(d_params, generate(g_params, z))))


def sample_target(n, rng):
    centers = rng.choice([-2.0, 2.0], size=(n, 1))
    return (centers + 0.5 * rng.normal(size=(n, 1))).astype(np.float32)


def init_mlp(rng, n_in, n_hidden):
    return {"W1": (rng.normal(size=(n_in, n_hidden)) / np.sqrt(n_in)).astype(np.float32),
            "b1": (0.1 * rng.normal(size=n_hidden)).astype(np.float32),
            "W2": (rng.normal(size=(n_hidden, 1)) / np.sqrt(n_hidden)).astype(np.float32),
            "b2": np.zeros(1, np.float32)}


class Adam:
    """Adam on a dict of arrays (8 lines; GANs are hard to train with plain SGD)."""

    def __init__(self, params, lr, b1=0.5, b2=0.999):
        self.lr, self.b1, self.b2, self.t = lr, b1, b2, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        self.t += 1
        out = {}
        for k in params:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * grads[k]
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * grads[k] ** 2
            m_hat = self.m[k] / (1 - self.b1 ** self.t)
            v_hat = self.v[k] / (1 - self.b2 ** self.t)
            out[k] = params[k] - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        return out


def wasserstein_1d(a, b):
    """W1 distance between two equal-size 1-D samples: mean gap between sorted values."""
    return float(np.mean(np.abs(np.sort(a.ravel()) - np.sort(b.ravel()))))


def save_png(path, real, fake, history):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install matplotlib)")
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(-4, 4, 61)
    ax1.hist(real.ravel(), bins=bins, density=True, alpha=0.5, label="target")
    ax1.hist(fake.ravel(), bins=bins, density=True, alpha=0.5, label="generated")
    ax1.set_title("samples")
    ax1.legend()
    ax2.plot([h[0] for h in history], [h[1] for h in history], marker="o")
    ax2.set_xlabel("round")
    ax2.set_ylabel("Wasserstein-1 distance")
    ax2.set_title("distance to target")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for the tests)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out",
                                                      "gan.png"), help="where to save the PNG")
    args = parser.parse_args()
    rounds = 600 if args.quick else 3000
    batch, z_dim = 128, 4
    rng = np.random.default_rng(0)
    g_params, d_params = init_mlp(rng, z_dim, 32), init_mlp(rng, 1, 32)
    g_opt, d_opt = Adam(g_params, 2e-3), Adam(d_params, 2e-3)
    d_step = tj.value_and_grad(d_loss, argnums=0)      # w.r.t. D's parameters only
    g_step = tj.value_and_grad(g_loss, argnums=0)      # w.r.t. G's parameters only

    z_eval = rng.normal(size=(2000, z_dim)).astype(np.float32)
    real_eval = sample_target(2000, rng)
    history = [(0, wasserstein_1d(generate(g_params, z_eval), real_eval))]
    print(f"round     0  W1 distance {history[0][1]:.3f}")
    for r in range(1, rounds + 1):
        z = rng.normal(size=(batch, z_dim)).astype(np.float32)
        ld, gd = d_step(d_params, g_params, z, sample_target(batch, rng))
        d_params = d_opt.step(d_params, gd)            # D moves, G held fixed
        z = rng.normal(size=(batch, z_dim)).astype(np.float32)
        lg, gg = g_step(g_params, d_params, z)
        g_params = g_opt.step(g_params, gg)            # G moves, D held fixed
        if r % (rounds // 10) == 0:
            dist = wasserstein_1d(generate(g_params, z_eval), real_eval)
            history.append((r, dist))
            print(f"round {r:5d}  D loss {ld:.3f}  G loss {lg:.3f}  W1 distance {dist:.3f}")

    fake = generate(g_params, z_eval)
    save_png(args.out, real_eval, fake, history)
    print(f"result: W1 distance between generated and target samples {history[0][1]:.3f} -> "
          f"{history[-1][1]:.3f} after {rounds} rounds")


if __name__ == "__main__":
    main()
