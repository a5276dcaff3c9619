{% macro delivery_columns() %}
    cast(order_ref as varchar) as order_id,
    cast(placed_ts as timestamp) as placed_at,
    cast(courier_id as bigint) as courier_id,
    cast(restaurant_ref as varchar) as restaurant_ref,
    cast(distance_m as double) / 1000 as distance_km,
    cast(item_count as bigint) as item_count,
    nullif(lower(trim(region_name)), '') as region,
    coalesce(cast(raining as boolean), false) as is_raining
{% endmacro %}

{#- `staged` carries the staged columns plus the courier's and the restaurant's state as of just
    before the delivery (courier_state_columns(), restaurant_state_columns()), in the warehouse
    and at serving alike. #}
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
    (epoch(d.placed_at) - epoch(d.state_last_delivery_at)) / 60 as minutes_since_courier_last_delivery,
    coalesce(d.state_restaurant_orders_2h, 0) as restaurant_orders_2h
from {{ staged }} as d
cross join {{ stats }} as s
{% endmacro %}

{#- Serving: the request's records, and for each entity its events relation (the request's
    couriers' or restaurants' events from the online store plus the request's own rows, in the
    raw fields' shape), staged with the same cleanup. #}
{% macro serving_delivery_features(
    request='request',
    courier_events='entity_events__courier',
    restaurant_events='entity_events__restaurant',
    stats='fitted_delivery_stats'
) %}
with staged as (
    select __row_id, {{ delivery_columns() }} from {{ request }}
),

courier_timeline as (
    select __row_id, {{ delivery_columns() }} from {{ courier_events }}
),

courier_state as (
    {{ courier_state('courier_timeline', '__row_id') }}
),

restaurant_timeline as (
    select __row_id, {{ delivery_columns() }} from {{ restaurant_events }}
),

restaurant_state as (
    {{ restaurant_state('restaurant_timeline', '__row_id') }}
),

staged_with_state as (
    select
        staged.*,
        {{ courier_state_columns('courier_state') }},
        {{ restaurant_state_columns('restaurant_state') }}
    from staged
    left join courier_state on courier_state.state_key = staged.__row_id
    left join restaurant_state on restaurant_state.state_key = staged.__row_id
),

features as (
    {{ delivery_features('staged_with_state', stats, passthrough=['__row_id', 'order_id', 'placed_at']) }}
)

select * from features order by __row_id
{% endmacro %}
