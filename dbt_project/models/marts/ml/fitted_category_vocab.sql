with

training_window as (
    select * from {{ ref('int_transactions__training_window') }}
),

counts as (
    {%- for column in categorical_feature_columns() %}
    select
        '{{ column }}' as feature_name,
        {{ column }} as category,
        count(*) as count_training_rows
    from training_window
    where {{ column }} is not null
    group by all
    having count(*) >= {{ var('min_category_count', 20) }}
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

final as (
    select
        feature_name,
        category,
        cast(row_number() over (
            partition by feature_name order by count_training_rows desc, category
        ) as integer) as category_index,
        count_training_rows
    from counts
)

select * from final
