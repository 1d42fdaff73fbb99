"""The deployment API service and the Pulumi program that runs it in the cluster."""
