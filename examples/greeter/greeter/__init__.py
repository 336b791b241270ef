"""greeter: a stateless greeting API, the smallest service Cutover can deploy blue/green."""
