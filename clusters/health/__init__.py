"""Cluster health: what only shows in production, watched for (DESIGN.md, "Cluster health").

agents.py: ECS agents that disconnected and did not come back.
reserved_memory.py: instances that keep too little memory from ECS for the agent and daemon.
memory_guard.py: what a revision must promise about memory before a rollout touches anything.
"""
