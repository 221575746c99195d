"""Operator tools: bounded reads of partitions, dead letters, reprocess, replay, topic plans and
consumer lag.
"""
