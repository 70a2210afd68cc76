"""The four roles of a run. Plain Python: they never know which runtime hosts them."""

from distdqn.roles.actor import Actor
from distdqn.roles.evaluator import Evaluator
from distdqn.roles.learner import Learner
from distdqn.roles.replay_shard import ReplayShard

__all__ = ["Actor", "Evaluator", "Learner", "ReplayShard"]
