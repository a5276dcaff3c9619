with deliveries as (
    select * from {{ ref('stg_shop__deliveries') }}
),

stats as (
    select * from {{ ref('fitted_delivery_stats') }}
),

features as (
    {{ delivery_features('deliveries', 'stats') }}
),

final as (
    select features.*, deliveries.duration_s
    from features inner join deliveries using (order_id)
)

select * from final
