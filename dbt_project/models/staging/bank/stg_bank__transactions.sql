with

source as (
    select * from {{ source('bank', 'transactions') }}
),

renamed as (
    select
        {{ bank_transaction_columns() }},
        cast(is_fraud as boolean) as is_fraud,
        parse_filename(filename) as source_file
    from source
),

-- The processor re-sends some records; keep the first delivery of each transaction id.
deduplicated as (
    select *
    from renamed
    {{ first_delivery('transaction_id', 'source_file', 'event_at') }}
),

final as (
    select * from deduplicated
)

select * from final
