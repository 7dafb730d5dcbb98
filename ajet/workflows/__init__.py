"""Built-in workflows, usable straight from a config: `workflow: {path: ajet.workflows.react:ReActWorkflow}`."""
