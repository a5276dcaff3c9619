with source as (
    select * from {{ source('shop', 'deliveries') }}
),

final as (
    select {{ delivery_columns() }}, cast(duration_s as double) as duration_s
    from source
)

select * from final
