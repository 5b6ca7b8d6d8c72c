"""Projects: a case list in one folder (project.sqlite), and cohort runs on a local pool or Ray."""
