"""Multi-label evaluation: average precision against scikit-learn, max-pooled views, exact sharded (DDP) scoring."""
from __future__ import annotations

import importlib

import pytest
import torch
from sklearn.metrics import average_precision_score

from vitkit.engine import distributed as D
from vitkit.engine.metrics import average_precision, mean_average_precision
from vitkit.engine.multilabel import multilabel_loss, top1_hits, view_scores

E = importlib.import_module("vitkit.engine.evaluate")  # the module (vitkit.engine.evaluate is also a function)


def test_average_precision_matches_sklearn_with_ties_and_empty_classes():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(50, 6, generator=g)
    scores[:, 2] = (scores[:, 2] * 4).floor() / 4  # many ties
    labels = (torch.rand(50, 6, generator=g) < 0.3).float()
    labels[:, 5] = 0  # a class without positives: left out of the mean (PySlowFast's get_map)
    ap = average_precision(scores, labels)
    for c in range(5):
        assert ap[c].item() == pytest.approx(average_precision_score(labels[:, c], scores[:, c]), abs=1e-12)
    assert ap[5].isnan()
    m, _ = mean_average_precision(scores, labels)
    assert m == pytest.approx(100 * ap[:5].mean().item())
    perfect, _ = mean_average_precision(labels[:, :5] + 0.01 * scores[:, :5], labels[:, :5])
    assert perfect == pytest.approx(100.0)


def test_views_max_pooled_and_loss():
    logits = torch.tensor([[0.0, 2.0], [3.0, -1.0], [1.0, 1.0], [0.0, 0.0]])  # 2 videos x 2 views
    s = view_scores(logits, 2, 2, multi_label=True)
    torch.testing.assert_close(s, torch.sigmoid(torch.tensor([[3.0, 2.0], [1.0, 1.0]])))
    avg = view_scores(logits, 2, 2, multi_label=False)
    torch.testing.assert_close(avg.sum(1), torch.ones(2))
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert top1_hits(s, y) == 2 and top1_hits(s, torch.tensor([1, 0])) == 1
    ref = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits[:2]), y)
    torch.testing.assert_close(multilabel_loss(logits[:2], y), ref)


class _Views(torch.utils.data.Dataset):
    """Multi-label test items (views (V, D), multi-hot label, index); the 'model' is the identity."""

    multi_label = True

    def __init__(self, n=11, v=3, k=4):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, v, k, generator=g)
        self.y = (torch.rand(n, k, generator=g) < 0.4).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def test_sharded_scores_equal_one_process(monkeypatch):
    """Two ranks score disjoint unpadded shards; gathered by index they give the one-process scores and mAP."""
    ds, model = _Views(), torch.nn.Identity()
    one = E.evaluate(model, ds, batch_size=4)
    assert one.num_views == 3 and one.mAP is not None
    torch.testing.assert_close(one.scores, torch.sigmoid(ds.x).amax(1))  # max over views of the sigmoid
    rank1: list = []  # what rank 1 contributes to each all_gather
    monkeypatch.setattr(D, "all_gather_objects", lambda obj: rank1.append(obj) or [obj])
    E.score_dataset(model, ds, batch_size=4, dist=D.DistInfo(rank=1, world_size=2))
    assert len(rank1[0][0]) == len(ds) // 2  # rank 1's shard: indices 1, 3, 5 ...
    pending = iter(rank1)
    monkeypatch.setattr(D, "all_gather_objects", lambda obj: [obj, next(pending)])
    scores, labels, views = E.score_dataset(model, ds, batch_size=4, dist=D.DistInfo(rank=0, world_size=2))
    res = E.multilabel_metrics(scores, labels, views)
    assert res.num_samples == len(ds) and views == 3
    torch.testing.assert_close(scores, one.scores, rtol=0, atol=0)
    torch.testing.assert_close(labels, one.labels, rtol=0, atol=0)
    assert res.mAP == one.mAP
