"""EM for a 1-D Gaussian mixture, with the M-step done by gradient ascent.

    python examples/em_gaussian_mixture.py    # or --quick

Data: samples from a known 3-component mixture (generated here, so we can compare).
Each iteration:
  E-step: responsibilities r[n, k] = p(component k | x_n) under the current parameters,
          held under `tj.stop_gradient`: they are data for the M-step, not a function of it;
  M-step: one gradient-ascent step on the expected complete-data log-likelihood
          Q = mean_n sum_k r[n, k] * log(pi_k N(x_n | mu_k, sd_k)).
This is "gradient EM": with r held fixed, grad Q equals the gradient of the log-likelihood
itself (Fisher's identity), which the script checks. Without stop_gradient, autodiff would
also differentiate r, and the gradient would be wrong; the script shows that too.
"""
import argparse

import numpy as np

import tracejit as tj
import tracejit.numpy as tnp

TRUE_WEIGHTS = np.array([0.2, 0.5, 0.3])
TRUE_MEANS = np.array([-4.0, 0.0, 5.0])
TRUE_SDS = np.array([1.0, 0.7, 1.5])


def log_joint(params, x):
    """log pi_k + log N(x_n | mu_k, sd_k), shape (n, K). Weights via softmax, sd via exp."""
    log_pi = tnp.log_softmax(params["logits"])
    sd = np.exp(params["log_sd"])
    z = (x[:, None] - params["mu"]) / sd
    return log_pi - 0.5 * z ** 2 - params["log_sd"] - 0.5 * np.log(2 * np.pi)


def expected_loglik(params, x):
    lj = log_joint(params, x)
    r = tj.stop_gradient(tnp.softmax(lj, axis=1))     # E-step: posterior, held fixed
    q = np.mean(np.sum(r * lj, axis=1))                # M-step objective
    loglik = np.mean(tnp.logsumexp(lj, axis=1))        # what EM increases (reported as aux)
    return q, loglik


def expected_loglik_no_stop(params, x):
    """The same Q, but r is differentiated too: NOT what EM's M-step maximizes."""
    lj = log_joint(params, x)
    return np.mean(np.sum(tnp.softmax(lj, axis=1) * lj, axis=1))


def loglik(params, x):
    return np.mean(tnp.logsumexp(log_joint(params, x), axis=1))


def sample_mixture(n, rng):
    k = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    return TRUE_MEANS[k] + TRUE_SDS[k] * rng.normal(size=n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and iterations")
    args = parser.parse_args()
    n, iterations = (2000, 150) if args.quick else (20000, 300)
    rng = np.random.default_rng(0)
    x = sample_mixture(n, rng)

    # start: means at the data's 1/6, 3/6, 5/6 quantiles, the overall sd, equal weights
    params = {"logits": np.zeros(3), "mu": np.quantile(x, [1 / 6, 3 / 6, 5 / 6]),
              "log_sd": np.full(3, np.log(x.std()))}

    # Fisher's identity: grad Q (r under stop_gradient) == grad log-likelihood
    g_q = tj.grad(expected_loglik, has_aux=True)(params, x)[0]
    g_ll = tj.grad(loglik)(params, x)
    g_wrong = tj.grad(expected_loglik_no_stop)(params, x)
    diff = max(np.max(np.abs(g_q[k] - g_ll[k])) for k in g_q)
    wrong = max(np.max(np.abs(g_wrong[k] - g_ll[k])) for k in g_q)
    print(f"grad Q vs grad log-likelihood: max difference {diff:.1e} with stop_gradient, "
          f"{wrong:.1e} without")

    step = tj.value_and_grad(expected_loglik, has_aux=True)
    lr = 1.0
    for it in range(1, iterations + 1):
        (q, ll), grads = step(params, x)
        params = {k: params[k] + lr * grads[k] for k in params}   # ascent: +
        if it == 1 or it % (iterations // 6) == 0:
            print(f"iteration {it:4d}  log-likelihood {ll:.5f}  Q {q:.5f}")

    order = np.argsort(params["mu"])
    weights = np.exp(params["logits"]) / np.sum(np.exp(params["logits"]))
    print("component   true (weight, mean, sd)     recovered (weight, mean, sd)")
    for k, j in enumerate(order):
        print(f"    {k}       ({TRUE_WEIGHTS[k]:.2f}, {TRUE_MEANS[k]:5.2f}, {TRUE_SDS[k]:.2f})"
              f"        ({weights[j]:.2f}, {params['mu'][j]:5.2f}, "
              f"{np.exp(params['log_sd'][j]):.2f})")
    print("result: means " + ", ".join(f"{m:.2f}" for m in params["mu"][order])
          + " (true " + ", ".join(f"{m:.2f}" for m in TRUE_MEANS) + "); weights "
          + ", ".join(f"{w:.2f}" for w in weights[order])
          + " (true " + ", ".join(f"{w:.2f}" for w in TRUE_WEIGHTS) + ")")


if __name__ == "__main__":
    main()
