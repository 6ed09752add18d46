"""Shared pytest configuration and fixtures."""

import torch

# The suite runs on small CPU machines shared with other jobs; one intra-op thread per process
# keeps timings stable and avoids oversubscription (tensors in tests are small anyway).
torch.set_num_threads(1)
