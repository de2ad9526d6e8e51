"""Cluster health: what only shows in production, watched for (DESIGN.md, "Cluster health").

agents.py: ECS agents that disconnected and did not come back.
"""
