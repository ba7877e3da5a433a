"""The domain model every layer shares: resource kinds, write rules, lexical checks.

A leaf package: it imports nothing else of raftplane, so `api/`, `storage/` and `xds/` can
all import it without an arrow running the wrong way.
"""
