"""Monitoring: the monitor and retrain_policy stages, the replay skew audit, the retraining
policy, the HTML report and the day-by-day simulation."""
