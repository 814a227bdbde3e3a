import torch

from lavise.explainer import ExplainerHead, hinge_rank_loss


def loop_loss(pred, targets, cv, margin=1.0):
    total = 0.0
    for b in range(len(pred)):
        t = int(targets[b])
        for c in range(len(cv)):
            if c != t:
                total += max(0.0, margin - float(cv[t] @ pred[b]) + float(cv[c] @ pred[b]))
    return total / len(pred)


def test_hinge_rank_loss_matches_direct_loop():
    g = torch.Generator().manual_seed(1)
    pred = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=1)
    cv = torch.nn.functional.normalize(torch.randn(9, 5, generator=g), dim=1)
    y = torch.randint(0, 9, (7,), generator=g)
    assert abs(float(hinge_rank_loss(pred, y, cv)) - loop_loss(pred, y, cv)) < 1e-5


def test_hinge_rank_loss_by_hand():
    # pred equals concept 0; concepts orthogonal: each negative contributes max(0, 1 - 1 + 0) = 0
    cv = torch.eye(3)
    assert float(hinge_rank_loss(cv[:1], torch.tensor([0]), cv)) == 0.0
    # pred equals concept 1 but target 0: negatives c=1 -> 1-0+1 = 2, c=2 -> 1-0+0 = 1
    assert float(hinge_rank_loss(cv[1:2], torch.tensor([0]), cv)) == 3.0


def test_head_outputs_unit_vectors():
    head = ExplainerHead(16, 4).eval()
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 4)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
