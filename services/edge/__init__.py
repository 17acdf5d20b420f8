"""The edge: public REST + Server-Sent Events, translated to the planner's gRPC JobService."""
