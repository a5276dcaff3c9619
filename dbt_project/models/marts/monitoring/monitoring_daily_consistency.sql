{#- Online/offline consistency: each served prediction's features (as logged by the server, with
    the entity state it read from the online store) against the warehouse's point-in-time
    features for the same event, once the event has landed. Exact when the store knew every
    event the warehouse knows; the gap measures what it missed. -#}
{%- set features = model_feature_columns() -%}
{%- set key = ml_mart_column('key') -%}

with

served as (
    select * from {{ ref('stg_serving__predictions') }}
    where served_features is not null
),

warehouse as (
    select *, cast({{ adapter.quote(key) }} as varchar) as __event_key from {{ ml_features_relation() }}
),

compared as (
    {%- for feature in features %}
    select
        served.event_date as day,
        served.model_id,
        '{{ feature }}' as feature_name,
        cast(served.served_features[{{ loop.index }}] as float) as served_value,
        cast(warehouse.{{ adapter.quote(feature) }} as float) as warehouse_value
    from served
    -- the mart's key is the landed event key (its value, as text)
    inner join warehouse on warehouse.__event_key = served.event_key
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- if not features %}
    select cast(null as date) as day, cast(null as varchar) as model_id, cast(null as varchar) as feature_name,
        cast(null as float) as served_value, cast(null as float) as warehouse_value
    where false
    {%- endif %}
),

-- float32, the model's input type: the served value was logged from it, the warehouse's is cast to it.
judged as (
    select
        *,
        (served_value is null and warehouse_value is null)
            or (isnan(served_value) and isnan(warehouse_value))
            or served_value = warehouse_value as is_equal
    from compared
),

final as (
    select
        day,
        model_id,
        feature_name,
        count(*) as count_compared,
        count(*) filter (where coalesce(is_equal, false)) as count_equal,
        count_equal::double / count_compared as share_equal,
        max(abs(served_value - warehouse_value)) filter (where not coalesce(is_equal, false)) as max_abs_diff
    from judged
    group by all
)

select * from final
