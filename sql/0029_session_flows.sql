-- Flow-shape signatures (issue 11; docs/flow-shapes.md): each session's capability-flow matrix,
-- kept by the alerts consumer beside the session's credential-read state, and the shapes the
-- session already matched (an alert fires once per session and shape).
ALTER TABLE alert_session_state
  ADD COLUMN flow jsonb,
  ADD COLUMN shapes_matched text[] NOT NULL DEFAULT '{}' CHECK (cardinality(shapes_matched) <= 1000);
