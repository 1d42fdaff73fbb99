"""pier: Pulumi stacks, the deployment API and the library code the invoke tasks call."""
