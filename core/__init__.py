"""The Tuneforge engine: profile, plan, data, training, history and export. No Qt here, ever."""
