"""Side by side: a plain PyTorch MAML (MLP 1-40-40-1, second order, Finn et al. 2017) and
MetaGrad(method="maml", learn_basis=True) on an mlp 40-40 basis, on the same sinusoid tasks
and the same meta-training time budget.  Prints query MSE and meta-iterations per second of
both, and their ratios.  Skipped with a message when torch is not installed (it is not a
metafast dependency).

Run: python benchmarks/bench_vs_torch_maml.py [--budget 30] [--shots 5]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import import_metafast

import_metafast()

import metafast as mf  # noqa: E402


def torch_maml(torch, train, test, budget: float, inner_steps: int, inner_lr: float, meta_batch: int, seed: int):
    """(query MSE on test, iterations done): MAML on an MLP, inner SGD with create_graph=True."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    sizes = [(1, 40), (40, 40), (40, 1)]
    params = []
    for fan_in, fan_out in sizes:
        W = torch.empty(fan_in, fan_out)
        torch.nn.init.kaiming_uniform_(W.T, a=5**0.5)
        params += [W.requires_grad_(), torch.zeros(fan_out, requires_grad=True)]

    def forward(p, x):
        h = torch.relu(x @ p[0] + p[1])
        h = torch.relu(h @ p[2] + p[3])
        return (h @ p[4] + p[5]).squeeze(-1)

    def adapt(p, x, y, create_graph):
        for _ in range(inner_steps):
            loss = torch.mean((forward(p, x) - y) ** 2)
            grads = torch.autograd.grad(loss, p, create_graph=create_graph)
            p = [w - inner_lr * g for w, g in zip(p, grads)]
        return p

    def task(ts, i, query):
        t = ts[i]
        X, y = (t.X_query, t.y_query) if query else (t.X_support, t.y_support)
        return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)

    opt = torch.optim.Adam(params, lr=1e-3)
    rng = np.random.default_rng(seed)
    t0, it = time.perf_counter(), 0
    while time.perf_counter() - t0 < budget:
        opt.zero_grad()
        total = 0.0
        for i in rng.choice(len(train), meta_batch, replace=False):
            adapted = adapt(params, *task(train, i, False), create_graph=True)
            Xq, yq = task(train, i, True)
            total = total + torch.mean((forward(adapted, Xq) - yq) ** 2)
        (total / meta_batch).backward()
        opt.step()
        it += 1
    errs = []
    for i in range(len(test)):
        adapted = adapt(params, *task(test, i, False), create_graph=False)
        Xq, yq = task(test, i, True)
        errs.append(float(torch.mean((forward(adapted, Xq) - yq) ** 2)))
    return float(np.mean(errs)), it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--shots", type=int, default=5)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("bench_vs_torch_maml: skipped, torch is not installed (pip install torch to run it)")
        return
    K = args.shots
    train = mf.tasks.load("sinusoid", n_tasks=20000, n_support=K, n_query=K, seed=0)
    test = mf.tasks.load("sinusoid", n_tasks=600, n_support=K, n_query=50, seed=1)
    t_mse, t_it = torch_maml(torch, train, test, args.budget, inner_steps=5, inner_lr=0.01, meta_batch=25, seed=0)
    basis = mf.basis.make("mlp", n_basis=40, width=40, activation="tanh", random_state=0)
    model = mf.MetaGrad(
        basis=basis,
        method="maml",
        learn_basis=True,
        meta_lr=0.002,
        meta_batch=25,
        n_iter=10**7,
        max_time=args.budget,
        random_state=0,
        n_jobs=2,
    ).fit(train)
    m_mse = model.evaluate(test)["mse"]
    print(f"sinusoid K={K}, {args.budget:.0f} s of meta-training each")
    print(f"  PyTorch MAML MLP 1-40-40-1: query MSE {t_mse:.3f}, {t_it / args.budget:.1f} meta-iterations/s")
    print(f"  MetaGrad maml on mlp 40-40: query MSE {m_mse:.3f}, {model.n_iter_ / args.budget:.1f} meta-iterations/s")
    print(
        f"  ratios MetaGrad / PyTorch: MSE {m_mse / t_mse:.2f}, iterations per second "
        f"{model.n_iter_ / max(t_it, 1):.1f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
