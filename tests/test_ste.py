import torch

from fxp import fake_quantize


def test_forward_rounds_backward_passes_straight_through():
    x = torch.tensor([0.3, -1.26, 100.0, -100.0], requires_grad=True)
    y = fake_quantize(x, "s8.2")
    assert y.tolist() == [0.25, -1.25, 31.75, -32.0] and y.dtype == x.dtype
    y.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_clip_grad_zeroes_saturated_inputs():
    x = torch.tensor([0.3, -1.26, 100.0, -100.0], requires_grad=True)
    fake_quantize(x, "s8.2", clip_grad=True).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_trains_through_quantization():
    torch.manual_seed(0)
    w = torch.zeros(3, requires_grad=True)
    target = torch.tensor([0.5, -0.25, 1.0])
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        ((fake_quantize(w, "s8.4") - target) ** 2).sum().backward()
        opt.step()
    assert fake_quantize(w, "s8.4").tolist() == target.tolist()
