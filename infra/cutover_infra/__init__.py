"""Cutover's Pulumi program: components, typed stack config, and the pure functions they use."""
