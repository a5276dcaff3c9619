{#-
  Per-user entity state: what the pipeline knows about a card holder just before a moment.
  The warehouse computes it as of every transaction (point in time, for training) and as of the
  snapshot time (for serving) with the same SQL (int_user_state__timeline), and the feature SQL
  turns "raw record + state" into features. user_state_columns() is the state's shape, shared
  by the features mart's join and the serving join.
-#}
{% macro user_state_columns(alias) %}
    {{ alias }}.txn_count_24h as state_txn_count_24h,
    {{ alias }}.txn_count_30d as state_txn_count_30d,
    {{ alias }}.amount_sum_30d as state_amount_sum_30d,
    {{ alias }}.last_event_at as state_last_event_at,
    {{ alias }}.known_countries as state_known_countries,
    {{ alias }}.known_devices as state_known_devices
{% endmacro %}
