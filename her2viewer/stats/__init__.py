"""Statistics room: metrics with confidence intervals, shared by training, studies and radiomics.

It imports no other room of her2viewer, so that every room above it may use it.
"""
