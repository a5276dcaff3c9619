{#-
  Two entities, each with its state defined once here: a courier (an integer key) and a
  restaurant (a text key). Serving keeps each one's recent events in the online store.

  Per-courier state: for each row of `timeline` (one row per delivery), the
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

{#-
  Per-restaurant state (its kitchen's load): orders placed at the restaurant in the two hours
  before this one. The key is used as it lands: the store groups events by the raw key, so a
  cleaned key (trimmed, lower-cased) would group differently from it.
-#}
{% macro restaurant_state(timeline, key) %}
    select
        {{ key }} as state_key,
        restaurant_ref,
        placed_at as state_at,
        count(placed_at) over last_2h as orders_2h
    from {{ timeline }}
    window
        last_2h as (partition by restaurant_ref order by placed_at range between interval 2 hours preceding and current row exclude group)
{% endmacro %}

{% macro restaurant_state_columns(alias) %}
    {{ alias }}.orders_2h as state_restaurant_orders_2h
{% endmacro %}
