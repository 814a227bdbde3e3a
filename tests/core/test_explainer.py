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


def test_members_output_is_the_normalised_sum_of_member_outputs():
    torch.manual_seed(0)
    head = ExplainerHead(16, 4, members=3).eval()
    x = torch.randn(5, 16)
    unit = [torch.nn.functional.normalize(m(x), dim=1) for m in head.members]
    expected = torch.nn.functional.normalize(unit[0] + unit[1] + unit[2], dim=1)
    assert torch.allclose(head(x), expected, atol=1e-6)
    assert torch.allclose(head(x).norm(dim=1), torch.ones(5), atol=1e-5)
    assert head.config() == {"in_dim": 16, "emb_dim": 4, "hidden": 16, "dropout": 0.1, "members": 3}


def test_one_member_head_reads_the_single_head_format():
    torch.manual_seed(1)
    old = ExplainerHead(16, 4).eval()
    state = {k.replace("members.0.", "net."): v for k, v in old.state_dict().items()}  # lavise-explainer-1 keys
    new = ExplainerHead(16, 4)
    new.load_state_dict(state)
    x = torch.randn(3, 16)
    assert torch.equal(new.eval()(x), old(x))


def test_member_zero_is_trained_exactly_like_a_single_head():
    from lavise.train import fit_head

    g = torch.Generator().manual_seed(2)
    cv = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=1)
    y = torch.randint(0, 3, (60,), generator=g)
    x = torch.randn(60, 8, generator=g) + 3 * torch.nn.functional.pad(cv, (0, 4))[y]
    from lavise.options import TrainOptions

    opts = TrainOptions(heads=1, epochs=4, batch_size=16, seed=3)
    one, hist1 = fit_head(x[:50], y[:50], x[50:], y[50:], cv, opts)
    two, hist = fit_head(x[:50], y[:50], x[50:], y[50:], cv, opts.replace(heads=2))
    # both keep their last epoch (validation loss falls throughout), so member 0 must equal the single head
    assert [min(h, key=lambda r: r["val_loss"])["epoch"] for h in (hist1, hist)] == [4, 4]
    for (k, a), b in zip(one.members[0].state_dict().items(), two.members[0].state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(two.members[0][2].weight, two.members[1][2].weight)
    # the history scores the whole head
    assert abs(hist[-1]["val_loss"] - float(hinge_rank_loss(two(x[50:]), y[50:], cv))) < 1e-4


def _trained_like(head):
    """Non-trivial BatchNorm statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in head.members:
            for bn in (m[0], m[4]):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g))
                bn.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=g))
    return head.eval()


def test_folded_head_gives_the_eval_mode_outputs():
    torch.manual_seed(0)
    x = torch.randn(6, 16)
    for members, hidden in ((1, None), (3, None), (2, 7)):
        head = _trained_like(ExplainerHead(16, 4, hidden=hidden, members=members))
        folded = head.folded()
        assert torch.allclose(folded(x), head(x), atol=1e-5), (members, hidden)
        # ... and not the training-mode ones (batch statistics): the folding uses the running statistics
        assert not torch.allclose(folded(x), head.train()(x), atol=1e-3)
        head.eval()


def test_folded_head_is_a_frozen_copy():
    head = _trained_like(ExplainerHead(8, 3, members=2))
    x = torch.randn(4, 8)
    folded = head.folded()
    before = folded(x).clone()
    with torch.no_grad():
        head.members[0][2].weight.add_(1.0)
    assert torch.equal(folded(x), before)
    assert not any(b.requires_grad for b in folded.buffers())
