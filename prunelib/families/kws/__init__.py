"""Keyword spotting: a DS-CNN (Zhang et al. 2017, "Hello Edge") on FSDD spoken digits."""
