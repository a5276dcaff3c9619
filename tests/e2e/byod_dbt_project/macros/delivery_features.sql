{% macro delivery_columns() %}
    cast(order_ref as varchar) as order_id,
    cast(placed_ts as timestamp) as placed_at,
    cast(courier_id as bigint) as courier_id,
    cast(distance_m as double) / 1000 as distance_km,
    cast(item_count as bigint) as item_count,
    nullif(lower(trim(region_name)), '') as region,
    coalesce(cast(raining as boolean), false) as is_raining
{% endmacro %}

{#- `staged` carries the staged columns plus the courier's state as of just before the delivery
    (courier_state_columns()), in the warehouse and at serving alike. #}
{% macro delivery_features(staged, stats, passthrough=['order_id', 'placed_at']) %}
select
    {%- for column in passthrough %}
    d.{{ column }},
    {%- endfor %}
    d.distance_km,
    d.distance_km / s.mean_distance_km as relative_distance,
    cast(d.item_count as double) as item_count,
    cast(hour(d.placed_at) as integer) as hour_of_day,
    cast(d.is_raining as integer) as is_raining,
    case d.region when 'north' then 1 when 'south' then 2 when 'city' then 3 else 0 end as region_code,
    coalesce(d.state_deliveries_7d, 0) as courier_deliveries_7d,
    d.state_distance_km_sum_7d / nullif(d.state_deliveries_7d, 0) as courier_avg_distance_km_7d,
    (epoch(d.placed_at) - epoch(d.state_last_delivery_at)) / 60 as minutes_since_courier_last_delivery
from {{ staged }} as d
cross join {{ stats }} as s
{% endmacro %}

{#- Serving: the request's records, and `events` (the request's couriers' events from the online
    store plus the request's own rows, in the raw fields' shape), staged with the same cleanup. #}
{% macro serving_delivery_features(request='request', events='entity_events__courier', stats='fitted_delivery_stats') %}
with staged as (
    select __row_id, {{ delivery_columns() }} from {{ request }}
),

courier_events as (
    select __row_id, {{ delivery_columns() }} from {{ events }}
),

courier_state as (
    {{ courier_state('courier_events', '__row_id') }}
),

staged_with_state as (
    select staged.*, {{ courier_state_columns('courier_state') }}
    from staged
    left join courier_state on courier_state.state_key = staged.__row_id
),

features as (
    {{ delivery_features('staged_with_state', stats, passthrough=['__row_id', 'order_id', 'placed_at']) }}
)

select * from features order by __row_id
{% endmacro %}
