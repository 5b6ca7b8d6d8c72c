"""Drawing and editing annotations in the slide panes (tools, painter, panels)."""
