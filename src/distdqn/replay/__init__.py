"""Replay from parts: ring storage in lanes, an n-step accumulator, a sum tree."""

from distdqn.replay.buffer import PrioritizedReplay
from distdqn.replay.nstep import Completed, NStepAccumulator
from distdqn.replay.sum_tree import SumTree

__all__ = ["Completed", "NStepAccumulator", "PrioritizedReplay", "SumTree"]
