"""E2 (report HW3, Q2): one regularised gradient step by hand, reproduced with torch.optim.SGD's weight_decay.

The report's neuron: inputs (x, x, x^2, x^3, x^4), five weights, no bias, identity activation,
loss L = (y - z)^2 + (lambda / 2) * sum(w_i^2) with lambda = 0.9, learning rate 0.1, initial
weights (1, 2, 3, -2, -1), one sample x = 1, y = 20. It computes z = 3, L = 297.55, a gradient
of -34 for every weight, and the update w <- (1 - lr * lambda) * w - lr * dE/dw, where E is the
squared error only, giving (4.31, 5.22, 6.13, 1.58, 2.49).

Which ``weight_decay`` is that? SGD with weight decay wd adds wd * w to the gradient:
w <- w - lr * (dE/dw + wd * w) = (1 - lr * wd) * w - lr * dE/dw. That is the report's update
with wd = lambda. It is also exactly gradient descent on the report's whole loss, because the
gradient of (lambda / 2) * sum(w^2) is lambda * w: the 1/2 in the penalty is what makes
weight_decay = lambda (a penalty written lambda * sum(w^2) would need weight_decay = 2 * lambda).
"""

from __future__ import annotations

import torch

LAMBDA, LR = 0.9, 0.1
X, Y = 1.0, 20.0
W0 = [1.0, 2.0, 3.0, -2.0, -1.0]
REPORT_W1 = [4.31, 5.22, 6.13, 1.58, 2.49]


def features(x: float) -> torch.Tensor:
    return torch.tensor([x, x, x**2, x**3, x**4], dtype=torch.float64)


def neuron() -> torch.nn.Linear:
    layer = torch.nn.Linear(5, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([W0], dtype=torch.float64))
    return layer


def test_forward_pass_and_loss_match_the_report():
    layer = neuron()
    z = layer(features(X)).squeeze()
    penalty = LAMBDA / 2 * layer.weight.square().sum()
    loss = (Y - z) ** 2 + penalty
    assert z.item() == 3.0
    torch.testing.assert_close(loss, torch.tensor(297.55, dtype=torch.float64), rtol=0, atol=1e-12)
    (Y - z).pow(2).backward()
    assert layer.weight.grad.tolist() == [[-34.0] * 5]  # -2 (y - z) x_i with every x_i = 1


def test_sgd_weight_decay_lambda_gives_the_reports_weights():
    layer = neuron()
    optimizer = torch.optim.SGD(layer.parameters(), lr=LR, weight_decay=LAMBDA)
    (Y - layer(features(X)).squeeze()).pow(2).backward()  # only the squared error: SGD adds lambda * w
    optimizer.step()
    torch.testing.assert_close(layer.weight, torch.tensor([REPORT_W1], dtype=torch.float64), rtol=0, atol=1e-12)


def test_the_same_step_as_plain_gradient_descent_on_the_whole_loss():
    layer = neuron()
    optimizer = torch.optim.SGD(layer.parameters(), lr=LR)
    z = layer(features(X)).squeeze()
    ((Y - z) ** 2 + LAMBDA / 2 * layer.weight.square().sum()).backward()
    optimizer.step()
    torch.testing.assert_close(layer.weight, torch.tensor([REPORT_W1], dtype=torch.float64), rtol=0, atol=1e-12)


def test_a_larger_lambda_shrinks_the_weights_more():
    # The report's conclusion: more penalty, smaller weights (less variance, more bias).
    norms = []
    for decay in (0.0, LAMBDA, 5.0):
        layer = neuron()
        optimizer = torch.optim.SGD(layer.parameters(), lr=LR, weight_decay=decay)
        (Y - layer(features(X)).squeeze()).pow(2).backward()
        optimizer.step()
        norms.append(layer.weight.norm().item())
    assert norms[0] > norms[1] > norms[2]
