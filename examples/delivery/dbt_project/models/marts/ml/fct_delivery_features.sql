with deliveries as (
    select * from {{ ref('stg_shop__deliveries') }}
),

courier_state as (
    select * from {{ ref('fct_courier_state_at_delivery') }}
),

restaurant_state as (
    select * from {{ ref('fct_restaurant_state_at_delivery') }}
),

stats as (
    select * from {{ ref('fitted_delivery_stats') }}
),

-- Each delivery meets its courier's and its restaurant's state as of just before it: point in time.
deliveries_with_state as (
    select
        deliveries.*,
        {{ courier_state_columns('courier_state') }},
        {{ restaurant_state_columns('restaurant_state') }}
    from deliveries
    inner join courier_state using (order_id)
    inner join restaurant_state using (order_id)
),

features as (
    {{ delivery_features('deliveries_with_state', 'stats') }}
),

final as (
    select features.*, deliveries.duration_s
    from features inner join deliveries using (order_id)
)

select * from final
