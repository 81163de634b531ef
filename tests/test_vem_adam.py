"""VEM's hand-written Adam against torch.optim.Adam: the same numbers, step for step."""

import torch

from reavise.inference.vem import Adam


def _loss(m, logv, target):
    return ((m - target) ** 4).sum() + (torch.exp(logv) - logv).sum() + (m * logv).sum()


def test_adam_takes_exactly_the_steps_of_torch_optim_adam():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 30, 16, generator=g)
    init = [torch.randn(2, 30, 16, generator=g) * 3, torch.randn(2, 30, 16, generator=g)]
    ours = [t.clone().requires_grad_(True) for t in init]
    ref = [t.clone().requires_grad_(True) for t in init]
    opt, ref_opt = Adam(ours, lr=0.2), torch.optim.Adam(ref, lr=0.2)
    for _ in range(60):
        for params, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            _loss(*params, target).backward()
            o.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))
    assert not torch.allclose(ours[0], init[0], atol=1.0)  # it moved
    assert ours[0].grad is not None
    opt.zero_grad()
    assert ours[0].grad is None


def test_vem_run_does_not_import_dynamo():
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from reavise.inference import build_algorithm\n"
        "from reavise.models import build_prior\n"
        "torch.manual_seed(0)\n"
        "prior = build_prior('a-vae', {'x_dim': 65, 'z_dim': 4, 'hidden': [32]}).eval()\n"
        "X = torch.randn(1, 20, 65, dtype=torch.complex64)\n"
        "build_algorithm('vem', max_iter=3).run(prior, X)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
