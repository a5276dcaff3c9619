{% macro delivery_columns() %}
    cast(order_ref as varchar) as order_id,
    cast(placed_ts as timestamp) as placed_at,
    cast(distance_m as double) / 1000 as distance_km,
    cast(item_count as bigint) as item_count,
    nullif(lower(trim(region_name)), '') as region,
    coalesce(cast(raining as boolean), false) as is_raining
{% endmacro %}

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
    case d.region when 'north' then 1 when 'south' then 2 when 'city' then 3 else 0 end as region_code
from {{ staged }} as d
cross join {{ stats }} as s
{% endmacro %}

{% macro serving_delivery_features(request='request', stats='fitted_delivery_stats') %}
with staged as (
    select __row_id, {{ delivery_columns() }} from {{ request }}
),

features as (
    {{ delivery_features('staged', stats, passthrough=['__row_id', 'order_id', 'placed_at']) }}
)

select * from features order by __row_id
{% endmacro %}
