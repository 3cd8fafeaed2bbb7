import copy

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

from maskformer.modeling.layers.frozen_bn import FrozenBNConv2d, fold_frozen_batchnorm


def _net(seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for cin, cout in [(3, 8), (8, 8)]:
        norm = FrozenBatchNorm2d(cout)
        norm.weight.copy_(torch.rand(cout, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(cout, generator=g))
        norm.running_mean.copy_(torch.randn(cout, generator=g))
        norm.running_var.copy_(torch.rand(cout, generator=g) + 0.5)
        layers.append(Conv2d(cin, cout, 3, padding=1, bias=False, norm=norm, activation=torch.relu))
    layers.append(Conv2d(8, 2, 1, norm=nn.GroupNorm(2, 2)))  # not frozen BN: left alone
    return nn.Sequential(*layers)


def test_folded_equals_conv_then_norm_with_the_same_gradients():
    # float64: the comparison is of the algebra, not of float32 rounding (the GroupNorm's bias
    # gradient is a near-cancelling sum).
    ref = _net().double()
    folded = copy.deepcopy(ref)
    assert fold_frozen_batchnorm(folded) == 2
    assert [type(m) for m in folded] == [FrozenBNConv2d, FrozenBNConv2d, Conv2d]
    assert folded.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y_ref, y = ref(x), folded(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    (y_ref * y_ref).sum().backward()
    (y * y).sum().backward()
    for (name, p), q in zip(ref.named_parameters(), folded.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_cached_weights_follow_parameter_and_buffer_updates():
    ref = _net()
    net = copy.deepcopy(ref)
    fold_frozen_batchnorm(net)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        net(x)  # fills the caches
        for m in (net, ref):
            m[0].weight.mul_(-2)  # in place, like an optimizer step
            m[1].norm.running_var.add_(1.0)  # or a checkpoint load
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)
        other = _net(seed=1)
        net.load_state_dict(other.state_dict())
        torch.testing.assert_close(net(x), other(x), rtol=1e-5, atol=1e-5)
