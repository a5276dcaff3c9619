with deliveries as (
    select * from {{ ref('stg_shop__deliveries') }}
),

final as (
    select avg(distance_km order by order_id) as mean_distance_km
    from deliveries
    where placed_at < cast('{{ var("train_end") }}' as date)
)

select * from final
