{#-
  Per-user entity state, defined once: for each row of `timeline` (one row per event of a user),
  the user's state from the user's events strictly before it (frames end at the current row and
  exclude its peer group: simultaneous events do not see each other, no row sees itself or its
  future).

  The warehouse runs it over every landed transaction (models/marts/ml/fct_user_state_at_transaction.sql,
  point in time, for training); serving runs it over the request's users' events from the online
  store plus the request's own rows (macros/serving/serving_features.sql), and the fused compiler
  turns its window aggregates into ONNX over each user's events. So what is served is what was
  trained on, whenever the store knows the same events.

  The online store keeps each user's events inside the longest window (30 days) and, of older
  ones, what the unbounded aggregates need: the latest event, and the latest event per country
  and per device (`meta.entity_state.keep` on fct_user_state_at_transaction). A new aggregate over
  unbounded history needs a keep rule there; the parity gate replays held-out events through the
  store and fails if one is missing.

  `key`: the column that identifies a timeline row (the transaction, or the request row).
-#}
{% macro user_state(timeline, key) %}
    select
        {{ key }} as state_key,
        user_id,
        event_at as state_at,
        count(amount) over last_24h as txn_count_24h,
        count(amount) over last_30d as txn_count_30d,
        {#- Amounts are summed as decimal cents: exact, so the sum does not depend on the order rows
            are combined in and every build (and the fused graph) gives the same bits. #}
        cast(coalesce(sum(cast(amount as decimal(18, 2))) over last_30d, 0) as double) as amount_sum_30d,
        max(event_at) over history as last_event_at,
        max(event_at) over same_country as last_same_country_at,
        max(event_at) over same_device as last_same_device_at
    from {{ timeline }}
    window
        last_24h as (partition by user_id order by event_at range between interval 24 hours preceding and current row exclude group),
        last_30d as (partition by user_id order by event_at range between interval 30 days preceding and current row exclude group),
        history as (partition by user_id order by event_at range between unbounded preceding and current row exclude group),
        same_country as (partition by user_id, country order by event_at range between unbounded preceding and current row exclude group),
        same_device as (partition by user_id, device order by event_at range between unbounded preceding and current row exclude group)
{% endmacro %}

{#- The state's shape as the feature SQL reads it, shared by the features mart's join and serving's. #}
{% macro user_state_columns(alias) %}
    {{ alias }}.txn_count_24h as state_txn_count_24h,
    {{ alias }}.txn_count_30d as state_txn_count_30d,
    {{ alias }}.amount_sum_30d as state_amount_sum_30d,
    {{ alias }}.last_event_at as state_last_event_at,
    {{ alias }}.last_same_country_at as state_last_same_country_at,
    {{ alias }}.last_same_device_at as state_last_same_device_at
{% endmacro %}
