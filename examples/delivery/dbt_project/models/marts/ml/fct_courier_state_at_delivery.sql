with deliveries as (
    select * from {{ ref('stg_shop__deliveries') }}
),

-- Each delivery's state from the courier's strictly earlier deliveries: point in time.
courier_state as (
    {{ courier_state('deliveries', 'order_id') }}
),

final as (
    select
        state_key as order_id,
        courier_id,
        state_at,
        deliveries_7d,
        distance_km_sum_7d,
        last_delivery_at
    from courier_state
)

select * from final
