import torch

from cnnlab.models import ObjectsCNN
from cnnlab.tensors import frozen


def test_an_exported_graph_stays_in_eval_mode_and_computes_what_the_model_did():
    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 12).eval()
    batch = torch.rand(2, 3, 12, 12)
    graph = torch.export.export(model, (batch,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    served = frozen(graph.module())
    assert served.train() is served  # traced in eval mode: no switch
    other = torch.rand(5, 3, 12, 12)  # another batch size than the trace's
    with torch.no_grad():
        torch.testing.assert_close(served(other), model(other))
