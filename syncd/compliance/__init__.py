"""What the CRM must stop holding: posts deleted on their network (``deleted``) and people who
asked to be forgotten (``forget``)."""
