with

training_window as (
    select * from {{ ref('int_transactions__training_window') }}
),

final as (
    select
        count(*) as count_training_rows,
        avg({{ log_amount('amount') }} order by transaction_id) as log_amount_mean,
        stddev_pop({{ log_amount('amount') }} order by transaction_id) as log_amount_std,
        quantile_cont(greatest(amount, 0), 0.999) as amount_clip_max,
        {%- for q in amount_quantiles() %}
        quantile_cont(amount, {{ q / 100 }}) as amount_p{{ q }}{{ "," if not loop.last }}
        {%- endfor %}
    from training_window
)

select * from final
