with deliveries as (
    select * from {{ ref('stg_shop__deliveries') }}
),

-- Each delivery's state from the restaurant's strictly earlier orders: point in time.
restaurant_state as (
    {{ restaurant_state('deliveries', 'order_id') }}
),

final as (
    select
        state_key as order_id,
        restaurant_ref,
        state_at,
        orders_2h
    from restaurant_state
)

select * from final
