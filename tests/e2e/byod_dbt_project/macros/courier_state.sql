{#-
  Per-courier state, defined once: for each row of `timeline` (one row per delivery), the
  courier's deliveries strictly before it (frames end at the current row and exclude its peer
  group). The warehouse runs it over every landed delivery (fct_courier_state_at_delivery);
  serving runs it over the courier's events from the online store plus the request's rows.

  Distances are summed as DECIMAL (exact, so the sum does not depend on the order of addition);
  `max(placed_at) over history` reads all history, so the entity keeps its latest event
  (`keep: [{latest: true}]` in meta.entity_state).
-#}
{% macro courier_state(timeline, key) %}
    select
        {{ key }} as state_key,
        courier_id,
        placed_at as state_at,
        count(distance_km) over last_7d as deliveries_7d,
        cast(coalesce(sum(cast(distance_km as decimal(18, 3))) over last_7d, 0) as double) as distance_km_sum_7d,
        max(placed_at) over history as last_delivery_at
    from {{ timeline }}
    window
        last_7d as (partition by courier_id order by placed_at range between interval 7 days preceding and current row exclude group),
        history as (partition by courier_id order by placed_at range between unbounded preceding and current row exclude group)
{% endmacro %}

{% macro courier_state_columns(alias) %}
    {{ alias }}.deliveries_7d as state_deliveries_7d,
    {{ alias }}.distance_km_sum_7d as state_distance_km_sum_7d,
    {{ alias }}.last_delivery_at as state_last_delivery_at
{% endmacro %}
