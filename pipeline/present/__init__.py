"""What a person sees: result tables, progress bars, charts for the report, and library chatter sent to a log."""
