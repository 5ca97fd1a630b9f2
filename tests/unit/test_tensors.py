import torch

from cnnlab import tensors
from cnnlab.models import ObjectsCNN
from cnnlab.tensors import export_graph


def test_export_graph_traces_a_structure_once_and_keeps_each_models_weights(monkeypatch):
    traced = []
    export = torch.export.export
    monkeypatch.setattr(tensors, "_GRAPHS", {})
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: traced.append(1) or export(*a, **k))
    batch, other = torch.rand(2, 3, 12, 12), torch.rand(5, 3, 12, 12)
    torch.manual_seed(0)
    first, second, wider = ObjectsCNN(2, 8, 12), ObjectsCNN(2, 8, 12), ObjectsCNN(2, 16, 12)
    second.features[1].running_mean += 0.5  # a buffer, not only the parameters, must follow the model
    graphs = [export_graph(m, batch) for m in (first, second, wider)]
    assert len(traced) == 2  # `second` reused `first`'s graph; `wider` has its own
    for model, graph in zip((first, second, wider), graphs):
        with torch.no_grad():
            torch.testing.assert_close(graph.module()(other), model(other))  # another batch size too
    assert not torch.equal(graphs[0].module()(other), graphs[1].module()(other))


def test_export_graph_traces_anew_where_the_reused_graph_would_compute_something_else(monkeypatch):
    monkeypatch.setattr(tensors, "_GRAPHS", {})
    batch = torch.rand(2, 3, 12, 12)
    plain, odd = ObjectsCNN(2, 8, 12), ObjectsCNN(2, 8, 12)
    odd.forward = lambda x: ObjectsCNN.forward(odd, x) * 2  # same structure, other code
    export_graph(plain, batch)
    with torch.no_grad():
        torch.testing.assert_close(export_graph(odd, batch).module()(batch), odd(batch))
