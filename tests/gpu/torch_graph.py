"""A PyTorch CUDA-graph step for the GPU suite (tests/gpu/run.sh), as inference servers run them.

Eight 2048 x 2048 matmuls (each followed by tanh) are captured into a torch.cuda.CUDAGraph (global
capture mode, PyTorch's default), after the warm-up on a side stream that PyTorch's docs ask for.
New data is copied into the graph's input and the graph replayed; its output is compared with the
same step run eagerly on that data. Then the graph is replayed back to back for SECONDS.

    python3 torch_graph.py [SECONDS]   prints "capture=ok|failed", "max_diff=... equal=0|1"
                                       (replay against eager) and "replays_per_s=..."
"""
import sys
import time

import torch

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
size = 2048
torch.manual_seed(0)
weights = [torch.randn(size, size, device="cuda") / size**0.5 for _ in range(8)]
static_input = torch.randn(size, size, device="cuda")


def step(x):
    for weight in weights:
        x = torch.tanh(x @ weight)
    return x


side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    for _ in range(3):
        step(static_input)
torch.cuda.current_stream().wait_stream(side)
torch.cuda.synchronize()

graph = torch.cuda.CUDAGraph()
try:
    with torch.cuda.graph(graph):
        static_output = step(static_input)
    torch.cuda.synchronize()
except Exception as error:  # the capture was refused or invalidated: say how, and stop
    print(f"capture=failed error_type={type(error).__name__}")
    print(f"error: {error}")
    sys.exit(1)
print("capture=ok")

static_input.copy_(torch.randn(size, size, device="cuda"))
graph.replay()
torch.cuda.synchronize()
eager = step(static_input)
torch.cuda.synchronize()
max_diff = (static_output - eager).abs().max().item()
print(f"max_diff={max_diff:.3g} equal={int(torch.equal(static_output, eager))}")

for _ in range(5):
    graph.replay()
torch.cuda.synchronize()
replays, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    graph.replay()
    replays += 1
    if replays % 8 == 0:  # a bounded queue: the rate is the GPU's, not the host's
        torch.cuda.synchronize()
torch.cuda.synchronize()
print(f"replays_per_s={replays / (time.monotonic() - start):.2f}")
