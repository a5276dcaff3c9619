with source as (
    select * from {{ source('shop', 'deliveries') }}
),

final as (
    select {{ delivery_columns() }}, cast(duration_min as double) as duration_min
    from source
)

select * from final
